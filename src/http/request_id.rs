//! Request ids and the span of each request. A request keeps the `X-Request-Id` its client
//! sent when that is 1 to 128 visible ASCII characters, and gets a random one (32 hex digits)
//! otherwise; every response, errors and 404s included, echoes it. Everything logged while the
//! request runs (an internal error, a database outage) is inside a span with its method, route
//! template and id; one INFO line at completion adds the status and the latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::http::state::AppState;

pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
pub const REQUEST_ID_LENGTH_MAX: usize = 128;

/// The client's id, if it is 1 to [`REQUEST_ID_LENGTH_MAX`] visible ASCII characters.
pub fn accepted(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|byte| (0x21..=0x7e).contains(byte));
    ((1..=REQUEST_ID_LENGTH_MAX).contains(&bytes.len()) && visible).then(|| value.clone())
}

/// A fresh id: 128 random bits as 32 lowercase hex digits.
pub fn generated() -> HeaderValue {
    HeaderValue::try_from(format!("{:032x}", rand::random::<u128>())).expect("hex digits are a valid header value")
}

/// Runs the request inside its span, logs its completion, counts it in the per-route metrics
/// and echoes its id. Handlers see the id in use in the request's `X-Request-Id`.
pub async fn with_request_id(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let id = request.headers().get(&REQUEST_ID).and_then(accepted).unwrap_or_else(generated);
    request.headers_mut().insert(REQUEST_ID.clone(), id.clone());
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %id.to_str().unwrap_or_default(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let latency = started.elapsed();
    state.metrics.http_routes.observe(route, method.as_str(), response.status().as_u16(), latency);
    let latency_ms = latency.as_micros() as f64 / 1000.0;
    span.in_scope(|| tracing::info!(status = response.status().as_u16(), latency_ms, "request finished"));
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_taken() {
        let take = |text: &[u8]| accepted(&HeaderValue::from_bytes(text).unwrap()).is_some();
        assert!(take(b"abc-123_XYZ.~!"));
        assert!(take(&[b'a'; REQUEST_ID_LENGTH_MAX]));
        assert!(!take(&[b'a'; REQUEST_ID_LENGTH_MAX + 1]));
        assert!(!take(b""));
        assert!(!take(b"with space"));
        assert!(!take(b"tab\there"));
        assert!(!take("caf\u{e9}".as_bytes()));
    }

    #[test]
    fn generated_ids_are_32_hex_digits_and_differ() {
        let (first, second) = (generated(), generated());
        assert_ne!(first, second);
        for id in [first, second] {
            let text = id.to_str().unwrap();
            assert_eq!(text.len(), 32);
            assert!(text.bytes().all(|byte| byte.is_ascii_hexdigit()));
        }
    }
}
