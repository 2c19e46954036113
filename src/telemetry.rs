//! Logs (tracing) and metrics: handles of the `metrics` crate over a Prometheus recorder of
//! `metrics-exporter-prometheus`, rendered by `GET /metrics`, plus the process series of
//! `metrics-process` and `minipay_build_info`.
//!
//! Each [`Metrics`] has a recorder of its own rather than the process-wide one (tests run
//! several servers in one process, each with its own series). Every series is registered once,
//! up front, and recorded through its handle (an atomic); the per-route request series are
//! registered on a route's first request and then found in a per-thread cache, so recording a
//! request takes no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Key, KeyName, Label, Level, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

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
const BATCH_SIZE_BUCKETS: [f64; 10] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0];
/// Upper bounds, in seconds, of the request latency histogram buckets.
const LATENCY_BUCKETS_SECS: [f64; 13] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BATCH_SIZE: &str = "minipay_ledger_batch_size";
const REQUESTS: &str = "minipay_http_requests_total";
const LATENCY: &str = "minipay_http_request_duration_seconds";
/// Histogram samples wait in the recorder until they are added to their buckets, at each
/// render and at least this often (a background thread), so memory stays bounded unscraped.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// Route templates whose request handles one thread keeps; beyond, it starts over.
const ROUTES_CACHED_MAX: usize = 256;
/// The recorder ignores metadata; the `metrics` API wants some.
const METADATA: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

pub struct Counter(metrics::Counter);

impl Counter {
    pub fn add(&self, value: u64) {
        self.0.increment(value);
    }
}

pub struct Gauge(metrics::Gauge);

impl Gauge {
    pub fn set(&self, value: i64) {
        self.0.set(value as f64);
    }
}

/// A histogram of counts (batch sizes), with a gauge of the largest value seen.
pub struct Histogram {
    histogram: metrics::Histogram,
    max: AtomicU64,
    max_gauge: metrics::Gauge,
}

impl Histogram {
    pub fn observe(&self, value: u64) {
        self.histogram.record(value as f64);
        self.max.fetch_max(value, Ordering::Relaxed);
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The max gauge takes the maximum at render time: setting it on every observation could
    /// leave a smaller value last.
    fn publish_max(&self) {
        self.max_gauge.set(self.max() as f64);
    }
}

/// Registers series with their help text on one recorder.
struct Registrar<'a>(&'a PrometheusRecorder);

impl Registrar<'_> {
    fn counter(&self, name: &'static str, help: &'static str) -> Counter {
        self.counter_with(name, help, Vec::new())
    }

    fn counter_with(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> Counter {
        self.0.describe_counter(KeyName::from_const_str(name), None, SharedString::const_str(help));
        Counter(self.0.register_counter(&Key::from_parts(name, labels), &METADATA))
    }

    fn gauge(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> metrics::Gauge {
        self.0.describe_gauge(KeyName::from_const_str(name), None, SharedString::const_str(help));
        self.0.register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    fn histogram(&self, name: &'static str, help: &'static str, labels: Vec<Label>) -> metrics::Histogram {
        self.0.describe_histogram(KeyName::from_const_str(name), None, SharedString::const_str(help));
        self.0.register_histogram(&Key::from_parts(name, labels), &METADATA)
    }
}

/// The method labels: the standard methods, then `OTHER` for any other.
const METHODS: [&str; 10] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "OTHER"];
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The request count and latency handles of one route, per method and status class.
type RouteHandles = [[Option<(metrics::Counter, metrics::Histogram)>; STATUS_CLASSES.len()]; METHODS.len()];

thread_local! {
    /// The handles of the routes this thread has recorded, for one [`HttpRoutes`] (its id):
    /// finding them takes no lock, where the recorder's registry takes a read lock and a hash
    /// of name and labels.
    static ROUTE_HANDLES: RefCell<(u64, HashMap<Box<str>, RouteHandles>)> = RefCell::new((0, HashMap::new()));
}

/// Ids of [`HttpRoutes`], for the per-thread handle caches.
static NEXT_ROUTES_ID: AtomicU64 = AtomicU64::new(1);

/// Per-route request counts and latencies. Labels stay few: route templates (not paths;
/// requests that match no route share `unmatched`), the standard methods (others are
/// `OTHER`) and status classes.
pub struct HttpRoutes {
    id: u64,
    recorder: Arc<PrometheusRecorder>,
}

impl HttpRoutes {
    fn new(recorder: Arc<PrometheusRecorder>) -> Self {
        let registrar = Registrar(&recorder);
        registrar.0.describe_counter(
            KeyName::from_const_str(REQUESTS),
            None,
            SharedString::const_str("Requests answered, by route template, method and status class."),
        );
        registrar.0.describe_histogram(
            KeyName::from_const_str(LATENCY),
            None,
            SharedString::const_str("Time from a request reaching the router to its response."),
        );
        HttpRoutes { id: NEXT_ROUTES_ID.fetch_add(1, Ordering::Relaxed), recorder }
    }

    pub fn observe(&self, route: &str, method: &str, status: u16, latency: Duration) {
        let method = METHODS.iter().position(|standard| *standard == method).unwrap_or(METHODS.len() - 1);
        let status = status_class(status);
        let record = |slot: &mut Option<(metrics::Counter, metrics::Histogram)>| {
            let (requests, latencies) = slot.get_or_insert_with(|| self.register(route, method, status));
            requests.increment(1);
            latencies.record(latency.as_secs_f64());
        };
        ROUTE_HANDLES.with(|cache| {
            let (id, routes) = &mut *cache.borrow_mut();
            if *id != self.id {
                (*id, *routes) = (self.id, HashMap::new());
            }
            // One look-up when the route was seen before (nearly always).
            if let Some(handles) = routes.get_mut(route) {
                return record(&mut handles[method][status]);
            }
            if routes.len() >= ROUTES_CACHED_MAX {
                routes.clear();
            }
            record(&mut routes.entry(route.into()).or_insert_with(RouteHandles::default)[method][status]);
        });
    }

    fn register(&self, route: &str, method: usize, status: usize) -> (metrics::Counter, metrics::Histogram) {
        let labels = || {
            vec![
                Label::new("route", route.to_owned()),
                Label::from_static_parts("method", METHODS[method]),
                Label::from_static_parts("status", STATUS_CLASSES[status]),
            ]
        };
        (
            self.recorder.register_counter(&Key::from_parts(REQUESTS, labels()), &METADATA),
            self.recorder.register_histogram(&Key::from_parts(LATENCY, labels()), &METADATA),
        )
    }
}

/// The index of the status class in [`STATUS_CLASSES`].
fn status_class(status: u16) -> usize {
    match status {
        ..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// Every series minipay exports. Shared through `Arc` by the HTTP layer and the workers.
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
    pub ledger_writers: Gauge,
    /// Audits run in this process (`GET /admin/audit`, the `audit` job).
    pub audit_runs: Counter,
    /// Audits that found a broken invariant or could not compare the stores.
    pub audit_failures: Counter,
    /// Whether the latest audit passed (1) or not (0); -1 before the first.
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
    process: metrics_process::Collector,
    recorder: Arc<PrometheusRecorder>,
    handle: Arc<PrometheusHandle>,
}

/// What the job runner counts for one job.
pub struct JobMetrics {
    /// Business dates (passes, for frequent jobs) run to the end.
    pub runs: Counter,
    /// Runs that stopped on an error (they resume from their last committed chunk).
    pub failures: Counter,
    pub chunks: Counter,
    /// Items the committed chunks handled.
    pub items: Counter,
}

impl JobMetrics {
    fn new(registrar: &Registrar, job: JobName) -> Self {
        let counter =
            |name, help| registrar.counter_with(name, help, vec![Label::from_static_parts("job", job.as_str())]);
        JobMetrics {
            runs: counter(
                "minipay_job_runs_total",
                "Job runs (a business date, or a pass of a frequent job) completed.",
            ),
            failures: counter(
                "minipay_job_failures_total",
                "Job runs stopped by an error; they resume where they stopped.",
            ),
            chunks: counter("minipay_job_chunks_total", "Job chunks committed."),
            items: counter("minipay_job_items_total", "Items handled by committed job chunks."),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::build()
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::build())
    }

    /// A recorder of its own, with the histogram buckets, the build and process series, and a
    /// thread that adds histogram samples to their buckets.
    fn recorder() -> (Arc<PrometheusRecorder>, Arc<PrometheusHandle>, metrics_process::Collector) {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.to_owned()), &BATCH_SIZE_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(LATENCY.to_owned()), &LATENCY_BUCKETS_SECS)
            })
            .expect("bucket bounds are given")
            .build_recorder();
        let recorder = Arc::new(recorder);
        let handle = Arc::new(recorder.handle());
        spawn_upkeep(Arc::downgrade(&handle));
        Registrar(&recorder)
            .gauge(
                "minipay_build_info",
                "The running build: its version in the label, value 1.",
                vec![Label::from_static_parts("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        let process = metrics_process::Collector::default();
        metrics::with_local_recorder(&*recorder, || process.describe());
        (recorder, handle, process)
    }

    fn build() -> Self {
        let (recorder, handle, process) = Metrics::recorder();
        let registrar = Registrar(&recorder);
        let counter = |name, help| registrar.counter(name, help);
        let gauge = |name, help| Gauge(registrar.gauge(name, help, Vec::new()));
        let audit_last_ok =
            gauge("minipay_audit_last_ok", "Whether the latest audit passed (1) or not (0); -1 before the first.");
        audit_last_ok.set(-1);
        Metrics {
            http_responses_2xx: counter("minipay_http_responses_2xx_total", "Responses with a status below 400."),
            http_responses_4xx: counter("minipay_http_responses_4xx_total", "Responses with a 4xx status."),
            http_responses_5xx: counter("minipay_http_responses_5xx_total", "Responses with a 5xx status."),
            ledger_batches: counter("minipay_ledger_batches_total", "Committed ledger batches."),
            ledger_commands: counter("minipay_ledger_commands_total", "Commands answered by the ledger writer."),
            ledger_commands_rejected: counter(
                "minipay_ledger_commands_rejected_total",
                "Commands refused by validation.",
            ),
            ledger_commands_again: counter(
                "minipay_ledger_commands_again_total",
                "Transfers run again in a batch that locks the external account, because they topped up.",
            ),
            ledger_batch_retries: counter(
                "minipay_ledger_batch_retries_total",
                "Batch attempts retried after a serialization failure or deadlock.",
            ),
            ledger_batches_failed: counter(
                "minipay_ledger_batches_failed_total",
                "Batches given up on (callers got 503).",
            ),
            ledger_queue_full: counter(
                "minipay_ledger_queue_full_total",
                "Commands refused because the writer queue was full.",
            ),
            ledger_batch_size: Histogram {
                histogram: registrar.histogram(BATCH_SIZE, "Commands per committed batch.", Vec::new()),
                max: AtomicU64::new(0),
                max_gauge: registrar.gauge("minipay_ledger_batch_size_max", "Largest batch seen.", Vec::new()),
            },
            ledger_queue_depth: gauge("minipay_ledger_queue_depth", "Commands waiting for a ledger writer."),
            ledger_writers: gauge(
                "minipay_ledger_writers",
                "Batches this process runs at once: its share of the database's ledger writers.",
            ),
            audit_runs: counter("minipay_audit_runs_total", "Audits run (admin route and the daily audit job)."),
            audit_failures: counter(
                "minipay_audit_failures_total",
                "Audits that found a broken invariant or could not compare the stores.",
            ),
            audit_last_ok,
            history_lag_ms: gauge(
                "minipay_history_lag_ms",
                "Milliseconds between now and the oldest statement entry not yet in ClickHouse.",
            ),
            history_entries_forwarded: counter(
                "minipay_history_entries_forwarded_total",
                "Statement entries copied from the outbox to ClickHouse (replays included).",
            ),
            history_forward_failures: counter(
                "minipay_history_forward_failures_total",
                "Forwarder steps that failed and were retried.",
            ),
            jobs: JobName::ALL.map(|job| JobMetrics::new(&registrar, job)),
            scheduler_ticks: counter("minipay_scheduler_ticks_total", "Scheduler ticks (each runs what is due)."),
            http_routes: HttpRoutes::new(recorder.clone()),
            process,
            recorder,
            handle,
        }
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

    /// The Prometheus text exposition of every series, the process's read now.
    pub fn render(&self) -> String {
        self.ledger_batch_size.publish_max();
        metrics::with_local_recorder(&*self.recorder, || self.process.collect());
        self.handle.render()
    }
}

/// Adds waiting histogram samples to their buckets every [`UPKEEP_EVERY`] until the handle's
/// [`Metrics`] is dropped.
fn spawn_upkeep(handle: Weak<PrometheusHandle>) {
    let spawned = std::thread::Builder::new().name("metrics-upkeep".to_owned()).spawn(move || loop {
        std::thread::sleep(UPKEEP_EVERY);
        match handle.upgrade() {
            Some(handle) => handle.run_upkeep(),
            None => return,
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "metrics: no upkeep thread; histogram samples wait for the next scrape");
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
    fn two_metrics_on_one_thread_keep_their_own_request_series() {
        let (first, second) = (Metrics::default(), Metrics::default());
        first.http_routes.observe("/v1/transfers", "POST", 201, Duration::from_millis(3));
        second.http_routes.observe("/v1/transfers", "POST", 201, Duration::from_millis(3));
        first.http_routes.observe("/v1/transfers", "POST", 201, Duration::from_millis(3));
        let series = r#"minipay_http_requests_total{route="/v1/transfers",method="POST",status="2xx"}"#;
        assert!(first.render().contains(&format!("\n{series} 2\n")));
        assert!(second.render().contains(&format!("\n{series} 1\n")));
    }

    #[test]
    fn process_and_build_series_are_rendered() {
        let text = Metrics::default().render();
        let version = env!("CARGO_PKG_VERSION");
        assert!(text.contains(&format!("\nminipay_build_info{{version=\"{version}\"}} 1\n")), "{text}");
        for series in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {series} ")) && text.contains(&format!("\n{series} ")),
                "{series} is not in\n{text}"
            );
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
