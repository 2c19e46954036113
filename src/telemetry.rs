//! Logs (tracing) and metrics (Prometheus text, rendered by hand from atomics: the handful of
//! series minipay exposes do not need a metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing_subscriber::{fmt, EnvFilter};

use crate::jobs::schedule::JobName;

/// Log line formats (`MINIPAY_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; coloured only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object a line, with the fields of the request's span.
    Json,
}

impl LogFormat {
    /// The format `MINIPAY_LOG_FORMAT` names; unset, empty or unknown is text (an unknown value
    /// stops `serve` and the other commands when they read their configuration).
    pub fn from_env() -> LogFormat {
        let value = std::env::var("MINIPAY_LOG_FORMAT").unwrap_or_default();
        <LogFormat as clap::ValueEnum>::from_str(&value, true).unwrap_or_default()
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the default level, `MINIPAY_LOG_FORMAT=json` gives
/// one JSON object a line. Text lines carry colour codes only when stderr is a terminal, so a
/// log redirected to a file or a pipe has none.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let ansi = std::io::stderr().is_terminal();
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let result = match LogFormat::from_env() {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // A second init (tests start several apps in one process) keeps the first subscriber.
    let _ = result;
}

/// Upper bounds of the batch-size histogram buckets.
const BATCH_SIZE_BUCKETS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BATCH_SIZE_BUCKETS.len()],
    count: AtomicU64,
    sum: AtomicU64,
    max: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: u64) {
        for (bucket, bound) in self.buckets.iter().zip(BATCH_SIZE_BUCKETS) {
            if value <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> u64 {
        self.sum.load(Ordering::Relaxed)
    }
}

/// Upper bounds, in seconds, of the request latency histogram buckets.
const LATENCY_BUCKETS_SECS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Requests of one route, method and status class: latencies per bucket (not cumulative; the
/// rendering sums them), count and total seconds.
#[derive(Default)]
struct RouteStats {
    buckets: [u64; LATENCY_BUCKETS_SECS.len()],
    count: u64,
    sum_secs: f64,
}

/// Route template → (method, status class) → stats, sorted so that the rendering is stable.
type RouteSeries = BTreeMap<Box<str>, BTreeMap<(&'static str, &'static str), RouteStats>>;

/// Per-route request counts and latencies. Labels stay few: route templates (not paths;
/// requests that match no route share `unmatched`), the standard methods (others are
/// `OTHER`) and status classes.
#[derive(Default)]
pub struct HttpRoutes(Mutex<RouteSeries>);

impl HttpRoutes {
    pub fn observe(&self, route: &str, method: &str, status: u16, latency: Duration) {
        let key = (method_label(method), status_class(status));
        let secs = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS_SECS.iter().position(|bound| secs <= *bound);
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !series.contains_key(route) {
            series.insert(route.into(), BTreeMap::new());
        }
        let stats = series.get_mut(route).expect("inserted above").entry(key).or_default();
        if let Some(bucket) = bucket {
            stats.buckets[bucket] += 1;
        }
        stats.count += 1;
        stats.sum_secs += secs;
    }

    fn render(&self, out: &mut String) {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let requests = "minipay_http_requests_total";
        let _ = writeln!(out, "# HELP {requests} Requests answered, by route template, method and status class.\n# TYPE {requests} counter");
        for (route, by_key) in series.iter() {
            for ((method, status), stats) in by_key {
                let _ = writeln!(
                    out,
                    "{requests}{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {}",
                    stats.count
                );
            }
        }
        let latency = "minipay_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {latency} Time from a request reaching the router to its response.\n# TYPE {latency} histogram"
        );
        for (route, by_key) in series.iter() {
            for ((method, status), stats) in by_key {
                let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
                let mut cumulative = 0;
                for (count, bound) in stats.buckets.iter().zip(LATENCY_BUCKETS_SECS) {
                    cumulative += count;
                    let _ = writeln!(out, "{latency}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
                }
                let _ = writeln!(out, "{latency}_bucket{{{labels},le=\"+Inf\"}} {}", stats.count);
                let _ = writeln!(out, "{latency}_sum{{{labels}}} {}", stats.sum_secs);
                let _ = writeln!(out, "{latency}_count{{{labels}}} {}", stats.count);
            }
        }
    }
}

/// The method as a label: one of the standard ones, or `OTHER`.
fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    STANDARD.into_iter().find(|standard| *standard == method).unwrap_or("OTHER")
}

fn status_class(status: u16) -> &'static str {
    match status {
        ..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Every series minipay exports. Shared through `Arc` by the HTTP layer and the workers.
#[derive(Default)]
pub struct Metrics {
    pub http_responses_2xx: Counter,
    pub http_responses_4xx: Counter,
    pub http_responses_5xx: Counter,
    pub ledger_batches: Counter,
    pub ledger_commands: Counter,
    pub ledger_commands_rejected: Counter,
    pub ledger_commands_again: Counter,
    pub ledger_batch_retries: Counter,
    pub ledger_batches_failed: Counter,
    pub ledger_queue_full: Counter,
    pub ledger_batch_size: Histogram,
    pub ledger_queue_depth: Gauge,
    /// Audits run in this process (`GET /admin/audit`, the `audit` job).
    pub audit_runs: Counter,
    /// Audits that found a broken invariant or could not compare the stores.
    pub audit_failures: Counter,
    /// Whether the latest audit passed (1) or not (0); rendered as -1 before the first.
    pub audit_last_ok: Gauge,
    /// Now minus the time of the oldest entry still in the outbox (0 when empty).
    pub history_lag_ms: Gauge,
    pub history_entries_forwarded: Counter,
    pub history_forward_failures: Counter,
    /// Per job, in the order of `JobName::ALL` (see `job`).
    pub jobs: [JobMetrics; JobName::ALL.len()],
    pub scheduler_ticks: Counter,
    /// Requests by route template, method and status class, with their latencies.
    pub http_routes: HttpRoutes,
}

/// What the job runner counts for one job.
#[derive(Default)]
pub struct JobMetrics {
    /// Business dates (passes, for frequent jobs) run to the end.
    pub runs: Counter,
    /// Runs that stopped on an error (they resume from their last committed chunk).
    pub failures: Counter,
    pub chunks: Counter,
    /// Items the committed chunks handled.
    pub items: Counter,
}

/// A per-job counter: name, help, and how to read it from a job's metrics.
type JobCounter = (&'static str, &'static str, fn(&JobMetrics) -> u64);

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    pub fn job(&self, name: JobName) -> &JobMetrics {
        &self.jobs[name.index()]
    }

    pub fn record_http_status(&self, status: u16) {
        match status {
            500.. => self.http_responses_5xx.add(1),
            400..=499 => self.http_responses_4xx.add(1),
            _ => self.http_responses_2xx.add(1),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        for (name, help, value) in self.counters() {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        self.render_job_counters(&mut out);
        self.render_gauges(&mut out);
        self.render_batch_sizes(&mut out);
        self.http_routes.render(&mut out);
        out
    }

    /// The process-wide counters: name, help, value.
    fn counters(&self) -> [(&'static str, &'static str, u64); 14] {
        [
            ("minipay_http_responses_2xx_total", "Responses with a status below 400.", self.http_responses_2xx.get()),
            ("minipay_http_responses_4xx_total", "Responses with a 4xx status.", self.http_responses_4xx.get()),
            ("minipay_http_responses_5xx_total", "Responses with a 5xx status.", self.http_responses_5xx.get()),
            ("minipay_ledger_batches_total", "Committed ledger batches.", self.ledger_batches.get()),
            ("minipay_ledger_commands_total", "Commands answered by the ledger writer.", self.ledger_commands.get()),
            (
                "minipay_ledger_commands_rejected_total",
                "Commands refused by validation.",
                self.ledger_commands_rejected.get(),
            ),
            (
                "minipay_ledger_commands_again_total",
                "Transfers run again in a batch that locks the external account, because they topped up.",
                self.ledger_commands_again.get(),
            ),
            (
                "minipay_ledger_batch_retries_total",
                "Batch attempts retried after a serialization failure or deadlock.",
                self.ledger_batch_retries.get(),
            ),
            (
                "minipay_ledger_batches_failed_total",
                "Batches given up on (callers got 503).",
                self.ledger_batches_failed.get(),
            ),
            (
                "minipay_ledger_queue_full_total",
                "Commands refused because the writer queue was full.",
                self.ledger_queue_full.get(),
            ),
            ("minipay_audit_runs_total", "Audits run (admin route and the daily audit job).", self.audit_runs.get()),
            (
                "minipay_audit_failures_total",
                "Audits that found a broken invariant or could not compare the stores.",
                self.audit_failures.get(),
            ),
            (
                "minipay_history_entries_forwarded_total",
                "Statement entries copied from the outbox to ClickHouse (replays included).",
                self.history_entries_forwarded.get(),
            ),
            (
                "minipay_history_forward_failures_total",
                "Forwarder steps that failed and were retried.",
                self.history_forward_failures.get(),
            ),
        ]
    }

    /// The scheduler's ticks, then one series per job of each per-job counter.
    fn render_job_counters(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP minipay_scheduler_ticks_total Scheduler ticks (each runs what is due).\n# TYPE minipay_scheduler_ticks_total counter\nminipay_scheduler_ticks_total {}",
            self.scheduler_ticks.get()
        );
        let job_counters: [JobCounter; 4] = [
            ("minipay_job_runs_total", "Job runs (a business date, or a pass of a frequent job) completed.", |job| {
                job.runs.get()
            }),
            ("minipay_job_failures_total", "Job runs stopped by an error; they resume where they stopped.", |job| {
                job.failures.get()
            }),
            ("minipay_job_chunks_total", "Job chunks committed.", |job| job.chunks.get()),
            ("minipay_job_items_total", "Items handled by committed job chunks.", |job| job.items.get()),
        ];
        for (name, help, value) in job_counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for job in JobName::ALL {
                let _ = writeln!(out, "{name}{{job=\"{}\"}} {}", job.as_str(), value(self.job(job)));
            }
        }
    }

    fn render_gauges(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP minipay_history_lag_ms Milliseconds between now and the oldest statement entry not yet in ClickHouse.\n# TYPE minipay_history_lag_ms gauge\nminipay_history_lag_ms {}",
            self.history_lag_ms.get()
        );
        let audit_last_ok = if self.audit_runs.get() == 0 { -1 } else { self.audit_last_ok.get() };
        let _ = writeln!(
            out,
            "# HELP minipay_audit_last_ok Whether the latest audit passed (1) or not (0); -1 before the first.\n# TYPE minipay_audit_last_ok gauge\nminipay_audit_last_ok {audit_last_ok}"
        );
        let _ = writeln!(
            out,
            "# HELP minipay_ledger_queue_depth Commands waiting for a ledger writer.\n# TYPE minipay_ledger_queue_depth gauge\nminipay_ledger_queue_depth {}",
            self.ledger_queue_depth.get()
        );
    }

    fn render_batch_sizes(&self, out: &mut String) {
        let histogram = &self.ledger_batch_size;
        let _ = writeln!(out, "# HELP minipay_ledger_batch_size Commands per committed batch.\n# TYPE minipay_ledger_batch_size histogram");
        for (bucket, bound) in histogram.buckets.iter().zip(BATCH_SIZE_BUCKETS) {
            let _ =
                writeln!(out, "minipay_ledger_batch_size_bucket{{le=\"{bound}\"}} {}", bucket.load(Ordering::Relaxed));
        }
        let _ = writeln!(out, "minipay_ledger_batch_size_bucket{{le=\"+Inf\"}} {}", histogram.count());
        let _ = writeln!(out, "minipay_ledger_batch_size_sum {}", histogram.sum());
        let _ = writeln!(out, "minipay_ledger_batch_size_count {}", histogram.count());
        let _ = writeln!(out, "# HELP minipay_ledger_batch_size_max Largest batch seen.\n# TYPE minipay_ledger_batch_size_max gauge\nminipay_ledger_batch_size_max {}", histogram.max());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.ledger_batch_size.observe(1);
        metrics.ledger_batch_size.observe(7);
        metrics.ledger_batch_size.observe(150);
        let text = metrics.render();
        assert!(text.contains("minipay_ledger_batch_size_bucket{le=\"1\"} 1"));
        assert!(text.contains("minipay_ledger_batch_size_bucket{le=\"10\"} 2"));
        assert!(text.contains("minipay_ledger_batch_size_bucket{le=\"200\"} 3"));
        assert!(text.contains("minipay_ledger_batch_size_sum 158"));
        assert!(text.contains("minipay_ledger_batch_size_max 150"));
    }

    #[test]
    fn the_audit_gauge_says_unknown_until_an_audit_ran() {
        let metrics = Metrics::default();
        assert!(metrics.render().contains("\nminipay_audit_last_ok -1\n"));
        metrics.audit_runs.add(1);
        metrics.audit_last_ok.set(1);
        assert!(metrics.render().contains("\nminipay_audit_last_ok 1\n"));
    }

    #[test]
    fn requests_are_counted_per_route_method_and_status_class() {
        let metrics = Metrics::default();
        let routes = &metrics.http_routes;
        routes.observe("/v1/accounts/{id}", "GET", 200, Duration::from_micros(800));
        routes.observe("/v1/accounts/{id}", "GET", 204, Duration::from_millis(30));
        routes.observe("/v1/accounts/{id}", "GET", 404, Duration::from_millis(2));
        routes.observe("unmatched", "BREW", 404, Duration::from_secs(20));
        let text = metrics.render();
        let get_2xx = r#"route="/v1/accounts/{id}",method="GET",status="2xx""#;
        for line in [
            format!("minipay_http_requests_total{{{get_2xx}}} 2"),
            r#"minipay_http_requests_total{route="/v1/accounts/{id}",method="GET",status="4xx"} 1"#.to_owned(),
            r#"minipay_http_requests_total{route="unmatched",method="OTHER",status="4xx"} 1"#.to_owned(),
            format!("minipay_http_request_duration_seconds_bucket{{{get_2xx},le=\"0.001\"}} 1"),
            format!("minipay_http_request_duration_seconds_bucket{{{get_2xx},le=\"0.025\"}} 1"),
            format!("minipay_http_request_duration_seconds_bucket{{{get_2xx},le=\"0.05\"}} 2"),
            format!("minipay_http_request_duration_seconds_bucket{{{get_2xx},le=\"+Inf\"}} 2"),
            format!("minipay_http_request_duration_seconds_count{{{get_2xx}}} 2"),
            r#"minipay_http_request_duration_seconds_bucket{route="unmatched",method="OTHER",status="4xx",le="10"} 0"#
                .to_owned(),
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} is not in\n{text}");
        }
    }

    #[test]
    fn job_counters_carry_the_job_name() {
        let metrics = Metrics::default();
        metrics.job(JobName::Reminders).items.add(3);
        let text = metrics.render();
        assert!(text.contains("minipay_job_items_total{job=\"reminders\"} 3"), "{text}");
        assert!(text.contains("minipay_job_items_total{job=\"retention\"} 0"), "{text}");
    }
}
