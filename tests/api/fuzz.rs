//! Hostile input from the OpenAPI document: for every documented operation, requests built
//! from its schema with hostile values (boundary and huge numbers, long and odd strings,
//! wrong types, missing and extra fields, other users' and non-numeric ids, bad cursors and
//! limits, malformed JSON, wrong media types, odd idempotency keys), sent one at a time by a
//! funded user who owns resources of every kind.
//!
//! What must hold: no 5xx; every error is problem+json with a `code`; a request that was
//! not answered 2xx changed nothing (the whole database state, as read by
//! [`database_state`], is the same before and after it); and the audit holds at the end.
//!
//! `MINIPAY_FUZZ_CASES` (default 2,000, which `scripts/test` runs) and `MINIPAY_FUZZ_SEED`
//! (default fixed, so a failure reproduces) choose the run; the README shows a longer one.

use std::collections::BTreeMap;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};

use crate::authorization::{database_state_on, documented_operations, world, Operation, World};
use crate::helpers::*;

const DEFAULT_CASES: u64 = 2_000;
const DEFAULT_SEED: u64 = 0x6d69_6e69_7061_7921;

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) if !text.is_empty() => text.parse().unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        _ => default,
    }
}

/// Ids worth trying: the fuzzing user's own, other users', and some that name nothing.
struct Ids {
    accounts: Vec<i64>,
    transfers: Vec<i64>,
    settlements: Vec<i64>,
    users: Vec<i64>,
    names: Vec<String>,
}

impl Ids {
    fn new(world: &World, bob_savings: i64) -> Ids {
        Ids {
            accounts: vec![
                world.alice.main_account_id,
                world.free_savings_id,
                world.fixed_savings_id,
                world.bob.main_account_id,
                world.carol.main_account_id,
                bob_savings,
            ],
            transfers: vec![world.immediate_transfer_id, world.pending_out_id, world.pending_in_id],
            settlements: vec![world.settlement_id],
            users: vec![world.alice.id, world.bob.id, world.carol.id],
            names: vec!["alice".to_owned(), "bob".to_owned(), "carol".to_owned()],
        }
    }
}

const BOUNDARY_INTEGERS: [i64; 12] = [
    0,
    -1,
    1,
    9_999,
    10_000,
    3_000_000,
    3_000_001,
    1_000_000_000_000,
    1_000_000_000_001,
    i64::MAX,
    i64::MIN,
    i64::MAX / 2 + 1,
];

/// Integers that are not i64: past the range, fractional, exponent forms (as raw JSON text).
const NOT_I64: [&str; 6] = ["9223372036854775808", "-9223372036854775809", "1e400", "10000.5", "1e4", "-0"];

fn hostile_string(rng: &mut ChaCha8Rng) -> String {
    match rng.gen_range(0..12) {
        0 => String::new(),
        1 => " ".repeat(rng.gen_range(1..4)),
        2 => "a".repeat(rng.gen_range(60..70)),
        3 => "b".repeat(rng.gen_range(250..300)),
        4 => "가".repeat(rng.gen_range(60..70)),
        5 => "x".repeat(rng.gen_range(1_000..5_000)),
        6 => "nul\u{0}inside".to_owned(),
        7 => "\u{202e}rtl\u{200b}zero-width😀".to_owned(),
        8 => " padded ".to_owned(),
        9 => "'; DROP TABLE users; --".to_owned(),
        10 => (0..rng.gen_range(1..20)).map(|_| char::from_u32(rng.gen_range(0x20..0x3000)).unwrap_or('?')).collect(),
        _ => format!("user{}", rng.gen_range(0..1_000)),
    }
}

fn hostile_integer(rng: &mut ChaCha8Rng) -> i64 {
    match rng.gen_range(0..4) {
        0 => *BOUNDARY_INTEGERS.choose(rng).unwrap(),
        1 => rng.gen_range(1..200_000),
        2 => rng.gen_range(-1_000..1_000),
        _ => rng.gen(),
    }
}

/// Words quoted in backticks in a schema's description (`free`, `fixed`, ...): the values
/// the field means to accept.
fn described_words(schema: &Value) -> Vec<String> {
    let description = schema["description"].as_str().unwrap_or("");
    description.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.rsplit('/').next().unwrap();
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn schema_types(schema: &Value) -> Vec<String> {
    match &schema["type"] {
        Value::String(kind) => vec![kind.clone()],
        Value::Array(kinds) => kinds.iter().filter_map(|kind| kind.as_str().map(str::to_owned)).collect(),
        _ => vec![],
    }
}

/// A value for the field `name` of `schema`: usually plausible, sometimes hostile, sometimes
/// of the wrong type. Raw JSON text, so that numbers outside i64 can be sent.
fn field_value(rng: &mut ChaCha8Rng, document: &Value, name: &str, schema: &Value, ids: &Ids, depth: u32) -> String {
    let schema = resolve(document, schema);
    if rng.gen_bool(0.08) {
        return wrong_type(rng);
    }
    let types = schema_types(schema);
    if types.iter().any(|kind| kind == "null") && rng.gen_bool(0.1) {
        return "null".to_owned();
    }
    let kind = types.iter().find(|kind| *kind != "null").cloned().unwrap_or_else(|| "object".to_owned());
    match kind.as_str() {
        "integer" => {
            if rng.gen_bool(0.05) {
                return NOT_I64.choose(rng).unwrap().to_string();
            }
            let value = match name {
                "to_account_id" if rng.gen_bool(0.7) => *ids.accounts.choose(rng).unwrap(),
                _ if name.ends_with("_id") && rng.gen_bool(0.7) => *ids.users.choose(rng).unwrap(),
                _ if rng.gen_bool(0.6) => rng.gen_range(1..150_000),
                _ => hostile_integer(rng),
            };
            value.to_string()
        }
        "boolean" => rng.gen_bool(0.5).to_string(),
        "string" => {
            let words = described_words(schema);
            let text = if schema["format"] == "date-time" {
                date_time(rng)
            } else if !words.is_empty() && rng.gen_bool(0.7) {
                words.choose(rng).unwrap().clone()
            } else if name == "name" && rng.gen_bool(0.3) {
                ids.names.choose(rng).unwrap().clone()
            } else if name == "password" && rng.gen_bool(0.5) {
                PASSWORD.to_owned()
            } else {
                hostile_string(rng)
            };
            Value::String(text).to_string()
        }
        "array" => {
            let length = match rng.gen_range(0..6) {
                0 => 0,
                1 => rng.gen_range(99..=102),
                2 => rng.gen_range(150..400),
                _ => rng.gen_range(1..5),
            };
            let items: Vec<String> = (0..length)
                .map(|_| {
                    if name == "participant_ids" && rng.gen_bool(0.8) {
                        ids.users.choose(rng).unwrap().to_string()
                    } else {
                        field_value(rng, document, "item", &schema["items"], ids, depth + 1)
                    }
                })
                .collect();
            format!("[{}]", items.join(","))
        }
        _ if depth > 2 => "{}".to_owned(),
        _ => object_value(rng, document, schema, ids, depth + 1),
    }
}

fn wrong_type(rng: &mut ChaCha8Rng) -> String {
    ["null", "true", "\"\"", "\"10000\"", "[]", "{}", "[1,2]", "0.5", "{\"a\":{}}"].choose(rng).unwrap().to_string()
}

fn date_time(rng: &mut ChaCha8Rng) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-24T12:00:00+09:00").unwrap();
    match rng.gen_range(0..8) {
        0 => "tomorrow".to_owned(),
        1 => "2026-11-24".to_owned(),
        2 => "2026-11-24T12:00:00".to_owned(),
        3 => "+262143-12-31T23:59:59Z".to_owned(),
        4 => "0000-01-01T00:00:00Z".to_owned(),
        5 => "2026-02-30T00:00:00+09:00".to_owned(),
        _ => (base + chrono::Duration::minutes(rng.gen_range(-60 * 24 * 400..60 * 24 * 400))).to_rfc3339(),
    }
}

fn object_value(rng: &mut ChaCha8Rng, document: &Value, schema: &Value, ids: &Ids, depth: u32) -> String {
    let required: Vec<&str> =
        schema["required"].as_array().map(|names| names.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    let mut fields = Vec::new();
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let include = if required.contains(&name.as_str()) { rng.gen_bool(0.93) } else { rng.gen_bool(0.5) };
            if include {
                let value = field_value(rng, document, name, property, ids, depth);
                fields.push(format!("{}:{value}", Value::String(name.clone())));
            }
        }
    }
    if rng.gen_bool(0.08) {
        let extra = ["from_account_id", "user_id", "id", "balance", "status", "\u{0}", "amount"].choose(rng).unwrap();
        fields.push(format!("{}:{}", Value::String(extra.to_string()), hostile_integer(rng)));
    }
    fields.shuffle(rng);
    format!("{{{}}}", fields.join(","))
}

/// A body for an operation that takes one: mostly schema-shaped JSON, sometimes broken.
fn request_body(rng: &mut ChaCha8Rng, document: &Value, schema: &Value, ids: &Ids) -> (Option<&'static str>, Vec<u8>) {
    let content_type = match rng.gen_range(0..40) {
        0 => None,
        1 => Some("text/plain"),
        2 => Some("application/x-www-form-urlencoded"),
        3 => Some("application/json; charset=utf-8"),
        _ => Some("application/json"),
    };
    let bytes = match rng.gen_range(0..40) {
        0 => b"{".to_vec(),
        1 => b"".to_vec(),
        2 => vec![b'{', b'"', 0xff, 0xfe, b'"', b':', b'1', b'}'],
        3 => wrong_type(rng).into_bytes(),
        4 => "[".repeat(rng.gen_range(100..3_000)).into_bytes(),
        5 => format!("{{\"amount\": {}}}", "9".repeat(rng.gen_range(20..5_000))).into_bytes(),
        _ => object_value(rng, document, resolve(document, schema), ids, 0).into_bytes(),
    };
    (content_type, bytes)
}

fn path_id(rng: &mut ChaCha8Rng, template: &str, ids: &Ids) -> String {
    if rng.gen_bool(0.8) {
        let pool = if template.starts_with("/v1/transfers") {
            &ids.transfers
        } else if template.starts_with("/v1/settlements") {
            &ids.settlements
        } else if template.starts_with("/v1/friends") || template.starts_with("/v1/blocks") {
            &ids.users
        } else {
            &ids.accounts
        };
        // The fuzzing user's own ids come first in each pool: half the time one of those, so
        // that requests also get past the ownership checks.
        let id = match rng.gen_range(0..10) {
            0..=4 => *pool[..pool.len().min(3)].choose(rng).unwrap(),
            5..=8 => *pool.choose(rng).unwrap(),
            _ => hostile_integer(rng),
        };
        return id.to_string();
    }
    ["abc", "1.5", "1e3", "99999999999999999999", "%20", "-", "0x10", "%00", "%E2%82%AC", "1%2F2", "%FF"]
        .choose(rng)
        .unwrap()
        .to_string()
}

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn query_value(rng: &mut ChaCha8Rng, name: &str, schema: &Value) -> String {
    let types = schema_types(schema);
    let words = described_words(schema);
    match name {
        "cursor" => match rng.gen_range(0..5) {
            0 => "i1".to_owned(),
            1 => format!("i{}", hostile_integer(rng)),
            2 => "garbage".to_owned(),
            3 => hostile_string(rng),
            _ => format!("{}", rng.gen::<u64>()),
        },
        "from" | "to" => date_time(rng),
        _ if types.iter().any(|kind| kind == "integer") => {
            if rng.gen_bool(0.15) {
                ["abc", "1.5", "", "99999999999999999999", "-"].choose(rng).unwrap().to_string()
            } else {
                hostile_integer(rng).to_string()
            }
        }
        _ if !words.is_empty() && rng.gen_bool(0.6) => words.choose(rng).unwrap().clone(),
        _ => ["incoming", "outgoing", "pending", "requested", "owed", "completed", "both", ""]
            .choose(rng)
            .map(|word| word.to_string())
            .filter(|_| rng.gen_bool(0.7))
            .unwrap_or_else(|| hostile_string(rng)),
    }
}

struct Request {
    method: Method,
    path: String,
    token: Option<String>,
    idempotency_key: Option<String>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

impl std::fmt::Display for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.as_ref().map(|body| String::from_utf8_lossy(body).chars().take(300).collect::<String>());
        write!(
            f,
            "{} {} token={} key={:?} content-type={:?} body={:?}",
            self.method,
            self.path.chars().take(300).collect::<String>(),
            self.token.as_deref().map(|token| if token.len() > 16 { "valid" } else { token }).unwrap_or("none"),
            self.idempotency_key.as_ref().map(|key| key.chars().take(40).collect::<String>()),
            self.content_type,
            body
        )
    }
}

fn request(rng: &mut ChaCha8Rng, document: &Value, operation: &Operation, ids: &Ids, user_token: &str) -> Request {
    let spec = &document["paths"][&operation.path][operation.method.to_lowercase()];
    let mut path = operation.path.clone();
    if path.contains("{id}") {
        path = path.replace("{id}", &path_id(rng, &operation.path, ids));
    }
    if path.contains("{user_id}") {
        path = path.replace("{user_id}", &path_id(rng, &operation.path, ids));
    }
    if path.contains("{name}") {
        let name = if operation.path.starts_with("/admin") {
            [
                "interest",
                "installments",
                "pending-expiry",
                "reminders",
                "retention",
                "audit",
                "session-purge",
                "nope",
                "",
            ]
            .choose(rng)
            .unwrap()
            .to_string()
        } else if rng.gen_bool(0.5) {
            ids.names.choose(rng).unwrap().clone()
        } else {
            hostile_string(rng)
        };
        path = path.replace("{name}", &percent_encoded(&name));
    }
    let mut query = Vec::new();
    let mut idempotency_key = None;
    for parameter in spec["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap();
        match parameter["in"].as_str() {
            Some("query") if rng.gen_bool(0.5) => {
                query.push(format!("{name}={}", percent_encoded(&query_value(rng, name, &parameter["schema"]))));
            }
            Some("header") if name.eq_ignore_ascii_case("idempotency-key") && rng.gen_bool(0.3) => {
                idempotency_key = Some(match rng.gen_range(0..5) {
                    0 => String::new(),
                    1 => "k".repeat(rng.gen_range(250..300)),
                    2 => format!("key-{}", rng.gen_range(0..20)),
                    3 => "ключ-😀".to_owned(),
                    _ => format!("key-{}", rng.gen::<u64>()),
                });
            }
            _ => {}
        }
    }
    if rng.gen_bool(0.05) {
        query.push(format!("{}={}", ["limit", "unknown", "cursor", "page"].choose(rng).unwrap(), hostile_integer(rng)));
    }
    if !query.is_empty() {
        path = format!("{path}?{}", query.join("&"));
    }
    let token = match rng.gen_range(0..30) {
        0 => None,
        1 => Some("garbage".to_owned()),
        // Operators' routes (reading, moving the clock, running jobs) get the admin token most
        // of the time, and must refuse a user's token otherwise.
        _ if operation.path.starts_with("/admin") && rng.gen_bool(0.8) => Some(ADMIN_TOKEN.to_owned()),
        _ => Some(user_token.to_owned()),
    };
    let (content_type, body) = match spec["requestBody"]["content"]["application/json"]["schema"].as_object() {
        Some(_) => {
            let (content_type, bytes) =
                request_body(rng, document, &spec["requestBody"]["content"]["application/json"]["schema"], ids);
            (content_type, Some(bytes))
        }
        // Bodies where none is expected are ignored, whatever they are.
        None if rng.gen_bool(0.05) => (Some("application/json"), Some(b"{\"amount\": 1}".to_vec())),
        None => (None, None),
    };
    let method = Method::from_bytes(operation.method.as_bytes()).unwrap();
    Request { method, path, token, idempotency_key, content_type, body }
}

async fn send(app: &TestApp, request: &Request) -> RawResponse {
    let mut builder = app.client.request(request.method.clone(), app.url(&request.path));
    if let Some(token) = &request.token {
        builder = builder.bearer_auth(token);
    }
    if let Some(key) = &request.idempotency_key {
        if let Ok(value) = reqwest::header::HeaderValue::from_str(key) {
            builder = builder.header("Idempotency-Key", value);
        } else {
            builder =
                builder.header("Idempotency-Key", reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap());
        }
    }
    if let Some(content_type) = request.content_type {
        builder = builder.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder.send().await.unwrap_or_else(|error| panic!("{request}: {error}"));
    let status = response.status();
    let content_type =
        response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    RawResponse { status, content_type, text, body }
}

#[tokio::test]
async fn hostile_requests_on_every_documented_route_never_fail_the_server_or_move_money_when_refused() {
    let cases = env_number("MINIPAY_FUZZ_CASES", DEFAULT_CASES);
    let seed = env_number("MINIPAY_FUZZ_SEED", DEFAULT_SEED);
    let app = spawn_app().await;
    let world = world(&app).await;
    let (status, bob_savings) =
        app.post("/v1/accounts", Some(&world.bob.token), json!({"kind": "savings", "product": "free"})).await;
    assert_eq!(status, 201, "{bob_savings}");
    let ids = Ids::new(&world, bob_savings["id"].as_i64().unwrap());
    let (document, operations) = documented_operations(&app).await;
    let mut conn = PgConnection::connect(&app.database_url).await.unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut user_name = world.alice.name.clone();
    let mut user_token = world.alice.token.clone();
    let mut histogram: BTreeMap<u16, u64> = BTreeMap::new();
    let mut per_operation: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut state = database_state_on(&mut conn).await;
    for case in 0..cases {
        let operation = operations.choose(&mut rng).unwrap();
        let request = request(&mut rng, &document, operation, &ids, &user_token);
        let response = send(&app, &request).await;
        let status = response.status.as_u16();
        *histogram.entry(status).or_default() += 1;
        let counts = per_operation.entry(format!("{} {}", operation.method, operation.path)).or_default();
        counts.0 += 1;
        if response.status.is_success() {
            counts.1 += 1;
        }
        let after = database_state_on(&mut conn).await;
        let mut problem = None;
        if status >= 500 {
            problem = Some(format!("answered {status}: {}", response.text));
        } else if status >= 400 {
            let is_problem = response.content_type.as_deref() == Some("application/problem+json")
                && response.body["code"].is_string()
                && response.body["status"] == json!(status);
            if !is_problem {
                problem = Some(format!(
                    "{status} is not problem+json with a code: {:?} {}",
                    response.content_type, response.text
                ));
            } else if after != state {
                problem = Some(format!("refused with {status} but changed the database:\n{state}\n---\n{after}"));
            }
        }
        if let Some(problem) = problem {
            failures.push(format!("case {case} (seed {seed}): {request}\n  {problem}"));
        }
        state = after;
        // Keep the fuzzing user signed in: a rename, a log-out, or a clock moved past the
        // session's lifetime are legitimate outcomes.
        if response.status.is_success() {
            let own = request.token.as_deref() == Some(user_token.as_str());
            if own && operation.path == "/v1/me" && operation.method == "PATCH" {
                user_name = response.body["name"].as_str().unwrap().to_owned();
            }
            if (own && operation.path == "/v1/sessions/current")
                || (operation.path == "/admin/clock" && operation.method == "PUT")
            {
                user_token = app.login(&user_name).await;
                state = database_state_on(&mut conn).await;
            }
        }
    }
    app.assert_audit_ok().await;
    println!("fuzz: {cases} cases, seed {seed}, status histogram {histogram:?}");
    for (operation, (sent, succeeded)) in &per_operation {
        println!("  {operation}: {sent} sent, {succeeded} 2xx");
    }
    // Every documented operation was exercised.
    assert_eq!(
        per_operation.len(),
        operations.len(),
        "operations never tried (raise MINIPAY_FUZZ_CASES): {:?}",
        operations
            .iter()
            .map(|o| format!("{} {}", o.method, o.path))
            .filter(|o| !per_operation.contains_key(o))
            .collect::<Vec<_>>()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}
