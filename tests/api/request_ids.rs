//! Request ids: a client's `X-Request-Id` is kept when it is 1 to 128 visible ASCII
//! characters, replaced by a generated one otherwise, echoed on every response (errors and
//! 404s included) and carried by every log line of the request. Logs written to a pipe have no
//! colour codes. `/metrics` counts requests per route template, method and status class.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::*;

/// The `X-Request-Id` of the response to `method path` sent with `sent` as its id (if any),
/// and the response's status.
async fn answered_id(
    client: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    sent: Option<&[u8]>,
    body: Option<Value>,
) -> (u16, String) {
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(sent) = sent {
        request = request.header("x-request-id", reqwest::header::HeaderValue::from_bytes(sent).unwrap());
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let ids: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1, "one X-Request-Id on {path}: {ids:?}");
    (response.status().as_u16(), ids[0].to_str().unwrap().to_owned())
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit())
}

#[tokio::test]
async fn a_valid_request_id_is_echoed_and_a_missing_or_bad_one_replaced() {
    let app = spawn_app().await;
    let (client, base) = (&app.client, app.base.as_str());
    let longest = "x".repeat(128);
    for sent in ["abc-123", "req:7f/2026.11~ok!", longest.as_str()] {
        let (status, id) = answered_id(client, base, Method::GET, "/healthz", Some(sent.as_bytes()), None).await;
        assert_eq!((status, id.as_str()), (200, sent));
    }
    let too_long = "x".repeat(129);
    for bad in [too_long.as_bytes(), b"has space", b"tab\tin", "caf\u{e9}".as_bytes(), b""] {
        let (_, id) = answered_id(client, base, Method::GET, "/healthz", Some(bad), None).await;
        assert!(is_generated(&id), "{:?} was answered with {id:?}", String::from_utf8_lossy(bad));
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (_, id) = answered_id(client, base, Method::GET, "/healthz", None, None).await;
        assert!(is_generated(&id), "{id}");
        assert!(seen.insert(id), "a generated id was repeated");
    }
}

#[tokio::test]
async fn errors_and_404s_carry_the_request_id() {
    let app = spawn_app().await;
    let (client, base) = (&app.client, app.base.as_str());
    let (status, id) = answered_id(client, base, Method::GET, "/no/such/route", Some(b"lost-1"), None).await;
    assert_eq!((status, id.as_str()), (404, "lost-1"));
    let (status, id) = answered_id(client, base, Method::GET, "/no/such/route", None, None).await;
    assert!(status == 404 && is_generated(&id), "{status} {id}");
    let bad_user = json!({ "name": 5, "password": "long enough password" });
    let (status, id) = answered_id(client, base, Method::POST, "/v1/users", Some(b"bad-1"), Some(bad_user)).await;
    assert_eq!((status, id.as_str()), (422, "bad-1"));
    let (status, id) = answered_id(client, base, Method::GET, "/v1/me", Some(b"anon-1"), None).await;
    assert_eq!((status, id.as_str()), (401, "anon-1"));
    let (status, id) = answered_id(client, base, Method::DELETE, "/healthz", Some(b"verb-1"), None).await;
    assert_eq!((status, id.as_str()), (405, "verb-1"));
}

#[tokio::test]
async fn the_log_line_of_a_request_carries_its_id_route_and_status_without_colour_codes() {
    let app = spawn_app().await;
    let server = spawn_logged_server_process(&app, &[("RUST_LOG", "info")]).await;
    let path = "/v1/accounts/12345";
    let (status, _) = answered_id(&app.client, &server.base, Method::GET, path, Some(b"trace-me-42"), None).await;
    assert_eq!(status, 401);
    let log = server.log().await;
    assert!(!log.contains('\u{1b}'), "escape codes in a log written to a pipe:\n{log}");
    let line = log.lines().find(|line| line.contains("trace-me-42")).unwrap_or_else(|| panic!("no id in:\n{log}"));
    for part in ["request_id=trace-me-42", "method=GET", "route=/v1/accounts/{id}", "status=401", "latency_ms="] {
        assert!(line.contains(part), "{part} is not in {line}");
    }
}

#[tokio::test]
async fn json_log_lines_carry_the_request_span() {
    let app = spawn_app().await;
    let env = [("RUST_LOG", "info"), ("MINIPAY_LOG_FORMAT", "json")];
    let server = spawn_logged_server_process(&app, &env).await;
    let (status, _) = answered_id(&app.client, &server.base, Method::GET, "/nowhere", Some(b"json-7"), None).await;
    assert_eq!(status, 404);
    let log = server.log().await;
    let lines: Vec<Value> =
        log.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line}"))).collect();
    let finished = lines
        .iter()
        .find(|line| line["span"]["request_id"] == json!("json-7"))
        .unwrap_or_else(|| panic!("no line of request json-7 in:\n{log}"));
    assert_eq!(finished["fields"]["status"], json!(404), "{finished}");
    assert_eq!(finished["span"]["route"], json!("unmatched"), "{finished}");
    assert!(finished["fields"]["latency_ms"].is_number(), "{finished}");
}

#[tokio::test]
async fn metrics_count_requests_per_route_with_a_latency_histogram() {
    let app = spawn_app().await;
    let (client, base) = (&app.client, app.base.as_str());
    for path in ["/v1/accounts/1", "/v1/accounts/2", "/v1/accounts/3", "/no/such/route"] {
        answered_id(client, base, Method::GET, path, None, None).await;
    }
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let labels = r#"route="/v1/accounts/{id}",method="GET",status="4xx""#;
    for line in [
        format!("minipay_http_requests_total{{{labels}}} 3"),
        format!("minipay_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 3"),
        format!("minipay_http_request_duration_seconds_count{{{labels}}} 3"),
        r#"minipay_http_requests_total{route="unmatched",method="GET",status="4xx"} 1"#.to_owned(),
    ] {
        assert!(text.lines().any(|candidate| candidate == line), "{line} is not in\n{text}");
    }
    assert!(text.contains("# TYPE minipay_http_request_duration_seconds histogram"), "{text}");
    assert!(text.contains(r#"minipay_http_request_duration_seconds_bucket{route="/v1/accounts/{id}",method="GET",status="4xx",le="0.001"}"#));
}
