//! Response headers shared by many routes: `Location` on a 201, and CORS for browser clients
//! (`MINIPAY_CORS_ORIGINS`). The `RateLimit-*` headers of a 429 are set with `Retry-After`
//! where the error is rendered (`http::error`).

use std::time::Duration;

use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use axum::Json;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::idempotency::respond;
use crate::store::idempotency::StoredResponse;

/// Characters kept as they are in a path segment (RFC 3986 unreserved); the rest is encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// A 201 with `Location` naming where the created resource is read.
pub type Created<T> = (StatusCode, [(HeaderName, HeaderValue); 1], Json<T>);

/// `{collection}/{segment}`, the segment percent-encoded.
pub fn location(collection: &str, segment: &str) -> HeaderValue {
    let path = format!("{collection}/{}", utf8_percent_encode(segment, SEGMENT));
    HeaderValue::from_str(&path).unwrap_or_else(|_| HeaderValue::from_static("/"))
}

pub fn created<T>(location: HeaderValue, body: T) -> Created<T> {
    (StatusCode::CREATED, [(header::LOCATION, location)], Json(body))
}

/// A stored response as sent; a 201 gets `Location: {collection}/{id}` from its body's `id`,
/// so an idempotent replay carries the same header as the first answer.
pub fn respond_created(stored: StoredResponse, collection: &str) -> Response {
    let id = match stored.status {
        201 => stored.body.get("id").and_then(serde_json::Value::as_i64),
        _ => None,
    };
    let mut response = respond(stored);
    if let Some(id) = id {
        response.headers_mut().insert(header::LOCATION, location(collection, &id.to_string()));
    }
    response
}

/// CORS for the configured origins (exact matches); `None` when there are none.
pub fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()).collect();
    if origins.is_empty() {
        return None;
    }
    let exposed = [
        header::LOCATION,
        header::RETRY_AFTER,
        HeaderName::from_static("ratelimit-limit"),
        HeaderName::from_static("ratelimit-remaining"),
        HeaderName::from_static("ratelimit-reset"),
        HeaderName::from_static("x-history-source"),
        HeaderName::from_static("x-history-lag-ms"),
        HeaderName::from_static("x-read-source"),
        HeaderName::from_static("x-request-id"),
    ];
    let layer = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers(exposed)
        .max_age(PREFLIGHT_MAX_AGE);
    Some(layer)
}
