#![allow(dead_code)]
//! The test harness: a fresh PostgreSQL database (copied from a migrated template) and a
//! fresh ClickHouse database per test, and a real server on a free port.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use minipay::app::Application;
use minipay::clock::ClockMode;
use minipay::config::{Config, JobsConfig, LedgerConfig};
use minipay::domain::social::SocialLimits;
use minipay::http::login_limit::LoginLimits;
use minipay::shutdown::Shutdown;
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// At least 32 characters, or no server starts with it.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";
pub const PASSWORD: &str = "correct horse";

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts PostgreSQL and ClickHouse")
    })
}

/// `DATABASE_URL` with another database name.
pub fn database_url_for(name: &str) -> String {
    let base = env_var("DATABASE_URL");
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL ends with /DATABASE");
    format!("{server}/{name}")
}

fn random_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..12).map(|_| char::from(b'a' + rng.gen_range(0..26))).collect()
}

/// The template's name changes whenever a migration does, so a stale template is never used.
fn template_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let migrator = sqlx::migrate!("./migrations");
        let mut hash: u64 = 0xcbf29ce484222325;
        for migration in migrator.iter() {
            for byte in migration.checksum.iter() {
                hash = (hash ^ u64::from(*byte)).wrapping_mul(0x100000001b3);
            }
        }
        format!("minipay_template_{hash:016x}")
    })
}

/// Creates (once, across test processes) the migrated template, then a fresh database.
pub async fn fresh_database() -> String {
    let mut admin = PgConnection::connect(&env_var("DATABASE_URL")).await.expect("connect to PostgreSQL");
    let template = template_name();
    sqlx::query("SELECT pg_advisory_lock(hashtext('minipay-test-template'))").execute(&mut admin).await.unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(template)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building}")).execute(&mut admin).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {building}")).execute(&mut admin).await.unwrap();
        let mut conn = PgConnection::connect(&database_url_for(&building)).await.unwrap();
        sqlx::migrate!("./migrations").run(&mut conn).await.expect("migrate the template");
        conn.close().await.unwrap();
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}")).execute(&mut admin).await.unwrap();
    }
    sqlx::query("SELECT pg_advisory_unlock(hashtext('minipay-test-template'))").execute(&mut admin).await.unwrap();
    let name = format!("minipay_test_{}", random_suffix());
    let mut attempts = 0;
    loop {
        match sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}")).execute(&mut admin).await {
            Ok(_) => break,
            // "source database is being accessed by other users": another test is copying it.
            Err(error) if attempts < 50 => {
                attempts += 1;
                let _ = error;
                tokio::time::sleep(std::time::Duration::from_millis(50 + attempts * 10)).await;
            }
            Err(error) => panic!("create test database: {error}"),
        }
    }
    admin.close().await.unwrap();
    name
}

/// A configuration for tests: manual clock, admin routes on, a free port.
pub fn test_config(database: &str) -> Config {
    Config {
        addr: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url_for(database).into(),
        replica: Default::default(),
        clickhouse_url: env_var("CLICKHOUSE_URL").into(),
        clickhouse_database: database.to_owned(),
        clock_mode: ClockMode::Manual,
        admin_token: Some(ADMIN_TOKEN.into()),
        tz: chrono_tz::Asia::Seoul,
        daily_charge_limit_krw: 3_000_000,
        db_pool_size: 20,
        request_timeout: std::time::Duration::from_secs(30),
        request_body_limit_bytes: 64 * 1024,
        session_ttl: chrono::Duration::days(1),
        session_cache_ttl: std::time::Duration::from_secs(5),
        summary_cache_rows: 1_000_000,
        // Cheap hashes: tests sign up hundreds of users.
        password_hash_cost: minipay::domain::passwords::HashCost { memory_kib: 1024, iterations: 1 },
        // Tests sign up a hundred users at once (with cheap hashes): none is refused.
        password_hashing: minipay::hashing::HashingLimits { concurrency: 2, queue: 1_000 },
        idempotency_ttl: chrono::Duration::hours(48),
        ledger: LedgerConfig::default(),
        forwarder: true,
        forwarder_abort_after_insert: false,
        forwarder_linger: minipay::config::FORWARDER_LINGER,
        // With the manual clock the scheduler does not tick; jobs run through the admin route.
        jobs: JobsConfig::default(),
        // Tests log in a lot from one address on a clock that stands still; the rate-limit
        // tests turn the limits on.
        login_limits: LoginLimits {
            failures_per_name_per_minute: 0,
            attempts_per_address_per_minute: 0,
            admin_failures_per_address_per_minute: 0,
        },
        trust_forwarded_for: false,
        cors_origins: Vec::new(),
        // Tests create split bills far faster than people do, on a clock that stands still; the
        // rate-limit tests turn these limits on.
        social_limits: SocialLimits { settlements_per_hour: 0, open_shares_per_participant: 0, ..Default::default() },
        clickhouse_timeouts: Default::default(),
        connections: Default::default(),
        clickhouse_cluster: None,
    }
}

/// The ClickHouse cluster the cluster tests run against (`scripts/test` starts one with
/// `scripts/services up clickhouse-cluster`): its name and comma-separated shard URLs, from
/// `MINIPAY_TEST_CLICKHOUSE_CLUSTER` and `MINIPAY_TEST_CLICKHOUSE_SHARD_URLS`; `None` when unset.
pub fn test_cluster() -> Option<(String, String)> {
    let name = std::env::var("MINIPAY_TEST_CLICKHOUSE_CLUSTER").ok().filter(|name| !name.is_empty())?;
    let urls = std::env::var("MINIPAY_TEST_CLICKHOUSE_SHARD_URLS").ok().filter(|urls| !urls.is_empty())?;
    Some((name, urls))
}

/// Configures `config` for the cluster `name` with these shard URLs (comma-separated).
pub fn use_cluster(config: &mut Config, name: &str, shard_urls: &str) {
    config.clickhouse_cluster = Some(minipay::config::ClickHouseCluster {
        name: name.to_owned(),
        shard_urls: shard_urls.split(',').map(|url| url.to_owned().into()).collect(),
    });
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub database: String,
    pub database_url: String,
    /// The ClickHouse the app uses (a [`TcpProxy`] in front of the shared server, if the test
    /// put one there).
    pub clickhouse_url: String,
    /// On a cluster: its name and shard URLs (comma-separated), which `clickhouse_url` is not.
    pub clickhouse_cluster: Option<(String, String)>,
    pub shutdown: Shutdown,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub name: String,
    pub token: String,
    pub main_account_id: i64,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server on a fresh database, after letting the test adjust the configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    minipay::telemetry::init_tracing();
    let database = fresh_database().await;
    let mut config = test_config(&database);
    adjust(&mut config);
    let database_url = config.database_url.expose().to_owned();
    let clickhouse_url = config.clickhouse_url.expose().to_owned();
    let clickhouse_cluster = config.clickhouse_cluster.as_ref().map(|cluster| {
        let urls: Vec<&str> = cluster.shard_urls.iter().map(|url| url.expose()).collect();
        (cluster.name.clone(), urls.join(","))
    });
    let application = Application::build(config).await.expect("build the application");
    let base = format!("http://{}", application.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(application.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(200).build().unwrap();
    TestApp { base, client, database, database_url, clickhouse_url, clickhouse_cluster, shutdown, server: Some(server) }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends a request; the body is parsed as JSON when there is one (`Value::Null` otherwise).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, token, Some(body)).await
    }

    pub async fn signup(&self, name: &str) -> TestUser {
        let (status, body) = self.post("/v1/users", None, json!({"name": name, "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::CREATED, "sign-up of {name}: {body}");
        let token = self.login(name).await;
        TestUser {
            id: body["id"].as_i64().unwrap(),
            name: name.to_owned(),
            token,
            main_account_id: body["main_account_id"].as_i64().unwrap(),
        }
    }

    /// A new user whose main account was topped up with `amount` (nothing when 0).
    pub async fn funded(&self, name: impl AsRef<str>, amount: i64) -> TestUser {
        let user = self.signup(name.as_ref()).await;
        if amount > 0 {
            let (status, body) = self.charge(&user, amount).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        user
    }

    pub async fn login(&self, name: &str) -> String {
        let (status, body) = self.post("/v1/sessions", None, json!({"name": name, "password": PASSWORD})).await;
        assert_eq!(status, StatusCode::CREATED, "log-in of {name}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    pub async fn charge(&self, user: &TestUser, amount: i64) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/accounts/{}/charges", user.main_account_id),
            Some(&user.token),
            json!({"amount": amount}),
        )
        .await
    }

    pub async fn account(&self, user: &TestUser, account_id: i64) -> Value {
        let (status, body) = self.get(&format!("/v1/accounts/{account_id}"), Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn balance(&self, user: &TestUser) -> i64 {
        self.account(user, user.main_account_id).await["balance"].as_i64().unwrap()
    }

    pub async fn me(&self, user: &TestUser) -> Value {
        let (status, body) = self.get("/v1/me", Some(&user.token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Moves the manual clock (RFC 3339 with offset).
    pub async fn set_clock(&self, now: &str) {
        let (status, body) =
            self.request(reqwest::Method::PUT, "/admin/clock", Some(ADMIN_TOKEN), Some(json!({"now": now}))).await;
        assert_eq!(status, StatusCode::OK, "set clock to {now}: {body}");
    }

    /// Asserts that every ledger invariant holds, and returns the report.
    pub async fn assert_audit_ok(&self) -> Value {
        let (status, body) = self.get("/admin/audit", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["ok"], json!(true), "audit failed: {body:#}");
        body
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Asserts a problem+json error with the given status and code.
pub fn assert_problem(status: StatusCode, body: &Value, expected_status: u16, code: &str) {
    assert_eq!(status.as_u16(), expected_status, "expected {expected_status} {code}, got {status}: {body}");
    assert_eq!(body["code"], json!(code), "{body}");
    assert_eq!(body["status"], json!(expected_status), "{body}");
}

/// A response kept whole: status, content type, raw text and (if it parses) JSON.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub text: String,
    pub body: Value,
}

impl TestApp {
    /// Sends raw bytes with an optional Content-Type and an optional bearer token, and keeps
    /// the response's headers that the error contract is about.
    pub async fn raw_request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> RawResponse {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        RawResponse { status, content_type, text, body }
    }

    /// The server's clock (`GET /admin/clock`).
    pub async fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        let (status, body) = self.get("/admin/clock", Some(ADMIN_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["now"].as_str().expect("now is a string").parse().expect("now is RFC 3339")
    }
}

/// Asserts a complete RFC 9457 problem: the media type, every member, and a `status` member
/// equal to the HTTP status.
pub fn assert_problem_response(response: &RawResponse, expected_status: u16, code: &str) {
    let context = format!("{} {:?}: {}", response.status, response.content_type, response.text);
    assert_eq!(response.status.as_u16(), expected_status, "expected {expected_status} {code}, got {context}");
    assert_eq!(response.content_type.as_deref(), Some("application/problem+json"), "{context}");
    for member in ["type", "title", "detail", "code"] {
        assert!(response.body[member].is_string(), "problem member {member} missing: {context}");
    }
    assert_eq!(response.body["status"], json!(expected_status), "{context}");
    assert_eq!(response.body["code"], json!(code), "{context}");
}

/// A size a test takes from the environment (to run it bigger than the suite does), or
/// `default`.
pub fn env_setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text.parse().unwrap_or_else(|error| panic!("{name}={text:?}: {error}")),
        Err(_) => default,
    }
}

/// A `minipay <subcommand>` process on the test's databases, configured like the test's app
/// (manual clock, admin token, the same ClickHouse), killed when dropped. Add `.env(..)` to
/// adjust it, then spawn it.
pub fn minipay_command(app: &TestApp, subcommand: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_minipay"));
    command
        .arg(subcommand)
        .env("DATABASE_URL", &app.database_url)
        .env("CLICKHOUSE_URL", &app.clickhouse_url)
        .env("CLICKHOUSE_DATABASE", &app.database)
        .env("MINIPAY_CLOCK", "manual")
        .env("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("MINIPAY_DB_POOL_SIZE", "10")
        .env("MINIPAY_LOGIN_ATTEMPTS_PER_NAME_PER_MINUTE", "0")
        .env("MINIPAY_LOGIN_ATTEMPTS_PER_ADDRESS_PER_MINUTE", "0")
        .env("RUST_LOG", "warn")
        .env_remove("MINIPAY_CLICKHOUSE_CLUSTER")
        .env_remove("MINIPAY_CLICKHOUSE_SHARD_URLS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some((name, urls)) = &app.clickhouse_cluster {
        command.env("MINIPAY_CLICKHOUSE_CLUSTER", name).env("MINIPAY_CLICKHOUSE_SHARD_URLS", urls);
    }
    command
}

/// A second `minipay serve` process on the same database.
pub struct ServerProcess {
    pub base: String,
    child: tokio::process::Child,
}

impl ServerProcess {
    /// The server's process id (to read its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server process is running")
    }

    /// Kills the server with SIGKILL, as a crash would (nothing drained, nothing flushed), and
    /// waits until it is gone.
    pub async fn crash(mut self) -> std::process::ExitStatus {
        let _ = self.child.start_kill();
        self.child.wait().await.expect("wait for the killed server")
    }

    /// Kills the server and returns what it logged (from [`spawn_logged_server_process`]).
    pub async fn log(mut self) -> String {
        use tokio::io::AsyncReadExt;
        let _ = self.child.start_kill();
        let mut stderr = self.child.stderr.take().expect("a server started by spawn_logged_server_process");
        let mut log = Vec::new();
        stderr.read_to_end(&mut log).await.expect("read the server's log");
        let _ = self.child.wait().await;
        String::from_utf8_lossy(&log).into_owned()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

pub async fn spawn_server_process(app: &TestApp) -> ServerProcess {
    spawn_server_process_with(app, &[]).await
}

/// A second server, with some environment variables added or overridden.
pub async fn spawn_server_process_with(app: &TestApp, env: &[(&str, &str)]) -> ServerProcess {
    start_server_process(app, env, Stdio::inherit()).await
}

/// A second server whose log (stderr; set `RUST_LOG` in `env`) [`ServerProcess::log`] returns.
pub async fn spawn_logged_server_process(app: &TestApp, env: &[(&str, &str)]) -> ServerProcess {
    start_server_process(app, env, Stdio::piped()).await
}

async fn start_server_process(app: &TestApp, env: &[(&str, &str)], stderr: Stdio) -> ServerProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = minipay_command(app, "serve")
        .env("MINIPAY_ADDR", format!("127.0.0.1:{port}"))
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .expect("start a second server");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        // Closed after the answer, so that the probe holds no connection of the server's.
        let probe = app.client.get(format!("{base}/healthz")).header(reqwest::header::CONNECTION, "close");
        if let Ok(response) = probe.send().await {
            if response.status() == 200 {
                return ServerProcess { base, child };
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the second server did not come up");
}

/// A TCP proxy in front of one server (ClickHouse, PostgreSQL, ...) that a test can cut and
/// restore, to make that server unreachable for one app while every other test goes on using
/// it. Cutting closes the connections in flight and resets every new one at once (as a server
/// that is down would refuse it); restoring forwards new connections again. Dropping the proxy
/// closes everything.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free local port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let (cut, cut_seen) = watch::channel(false);
        let acceptor = tokio::spawn(proxy_accept(listener, target, cut_seen));
        TcpProxy { addr, cut, acceptor }
    }

    /// A proxy in front of the server of `url` (`http://host:port`, `postgres://user@host:port/db`,
    /// ...), and `url` pointing at the proxy instead.
    pub async fn in_front_of(url: &str) -> (TcpProxy, String) {
        let mut parsed = reqwest::Url::parse(url).unwrap_or_else(|error| panic!("{url}: {error}"));
        let host = parsed.host_str().expect("the URL has a host").to_owned();
        let port = parsed.port_or_known_default().expect("the URL has a port");
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .expect("resolve the proxied server")
            .next()
            .expect("the proxied server has an address");
        let proxy = TcpProxy::start(target).await;
        parsed.set_host(Some(&proxy.addr.ip().to_string())).unwrap();
        parsed.set_port(Some(proxy.addr.port())).unwrap();
        (proxy, parsed.to_string().trim_end_matches('/').to_owned())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server becomes unreachable through the proxy, at once.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// New connections reach the server again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        // The connections see the sender go and close.
        self.acceptor.abort();
    }
}

async fn proxy_accept(listener: TcpListener, target: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if *cut.borrow() {
            // A reset, not an orderly close: like a connection refused, it fails the client at once.
            let _ = client.set_zero_linger();
            continue;
        }
        tokio::spawn(proxy_connection(client, target, cut.clone()));
    }
}

async fn proxy_connection(mut client: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else {
        let _ = client.set_zero_linger();
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        // Cut (or the proxy dropped): both ends are reset.
        _ = cut.wait_for(|cut| *cut) => {
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

/// Statement entries still waiting in the outbox (each outbox row names a transaction's entries).
pub async fn outbox_entries(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(cardinality(entry_ids)), 0)::int8 FROM statement_outbox")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Polls (short sleeps) until a forwarder running elsewhere has emptied the outbox; fails
/// after `bound`.
pub async fn wait_for_empty_outbox(pool: &PgPool, bound: std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        let waiting = outbox_entries(pool).await;
        if waiting == 0 {
            return;
        }
        assert!(
            started.elapsed() < bound,
            "the forwarder did not empty the outbox within {bound:?}: {waiting} entries left"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A series' value from `/metrics` at `base` (with its labels, e.g.
/// `minipay_job_runs_total{job="audit"}`).
pub async fn metric_at(client: &reqwest::Client, base: &str, series: &str) -> i64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    metric_in(&text, series).unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

/// A series' value in a Prometheus text exposition, if the series is there.
pub fn metric_in(text: &str, series: &str) -> Option<i64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Each user's balance is `funding`, less what they sent, plus what they received, over the
/// acknowledged transfers given as (sender index, receiver index, amount).
pub async fn assert_balances_after(
    app: &TestApp,
    users: &[TestUser],
    funding: i64,
    transfers: impl IntoIterator<Item = (usize, usize, i64)>,
) {
    let mut expected = vec![funding; users.len()];
    for (from, to, amount) in transfers {
        expected[from] -= amount;
        expected[to] += amount;
    }
    for (user, expected) in users.iter().zip(expected) {
        assert_eq!(app.balance(user).await, expected, "{}", user.name);
    }
}

/// Polls (short sleeps) until a session on `pool`'s database waits for a lock in a statement
/// containing `fragment` (among its first 1,024 bytes, all that PostgreSQL shows by default);
/// fails after ten seconds. Tests use it to know that a request they
/// sent is held where they meant to hold it before they go on.
pub async fn wait_for_lock_wait(pool: &PgPool, fragment: &str) {
    wait_for_lock_waits(pool, fragment, 1).await
}

/// Until at least `sessions` sessions of this database wait for a lock in a query containing
/// `fragment`; fails the test after 10 s.
pub async fn wait_for_lock_waits(pool: &PgPool, fragment: &str, sessions: i64) {
    let started = std::time::Instant::now();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock' AND strpos(query, $1) > 0",
        )
        .bind(fragment)
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= sessions {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{waiting} sessions wait for a lock in {fragment:?}, not {sessions}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
