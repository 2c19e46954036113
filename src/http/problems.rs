//! The error answers of the OpenAPI document that come from the extractors, the middleware and
//! the stores rather than from a handler's own rules, declared once here for every operation
//! they can reach: 401 where a bearer token is required, 400/413/422 where a JSON body is read,
//! 422 for query parameters and `Idempotency-Key`, 404 for path ids and for the admin routes
//! while they are disabled, 429 for admin guessing, 503 wherever PostgreSQL or the ledger is
//! needed. A route documents only what its handler adds (409, its own 404 or 422 reasons); a
//! reason already named in a route's description is not repeated.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::{Object, OpenApi, Ref, RefOr, Type};
use utoipa::Modify;

use super::idempotency::IDEMPOTENCY_KEY_LENGTH_MAX_CHARS;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One way an operation can fail: the status, a phrase that marks it as documented already,
/// and what a client is told.
struct Reason {
    status: &'static str,
    marker: &'static str,
    text: &'static str,
}

const UNAUTHORIZED: Reason = Reason {
    status: "401",
    marker: "unauthorized",
    text: "unauthorized: no `Authorization: Bearer` session token, or one that expired or was revoked",
};
const ADMIN_UNAUTHORIZED: Reason = Reason {
    status: "401",
    marker: "unauthorized",
    text: "unauthorized: no `Authorization: Bearer` admin token, or the wrong one (MINIPAY_ADMIN_TOKEN)",
};
const ADMIN_DISABLED: Reason = Reason {
    status: "404",
    marker: "MINIPAY_ADMIN_TOKEN",
    text: "not-found: every admin route answers 404 while MINIPAY_ADMIN_TOKEN is unset (admin disabled)",
};
const ADMIN_GUESSING: Reason = Reason {
    status: "429",
    marker: "too-many-requests",
    text: "too-many-requests: too many failed admin authentications from this address; even the right \
           token waits for Retry-After",
};
const NOT_FOUND: Reason = Reason {
    status: "404",
    marker: "not-found",
    text: "not-found: no such resource, or not the caller's (a malformed id too)",
};
const BAD_QUERY: Reason = Reason {
    status: "422",
    marker: "validation-failed",
    text: "validation-failed: a query parameter is malformed or out of range",
};
const BAD_KEY: Reason = Reason {
    status: "422",
    marker: "idempotency-key-reused",
    text: "idempotency-key-reused: the Idempotency-Key came with another request; validation-failed: it is \
           not 1..255 visible ASCII characters",
};
const MALFORMED_BODY: Reason = Reason {
    status: "400",
    marker: "validation-failed",
    text: "validation-failed: the body is not JSON, or comes without `Content-Type: application/json`",
};
const BODY_TOO_LARGE: Reason = Reason {
    status: "413",
    marker: "payload-too-large",
    text: "payload-too-large: the body is larger than MINIPAY_REQUEST_BODY_LIMIT_BYTES",
};
const INVALID_BODY: Reason = Reason {
    status: "422",
    marker: "validation-failed",
    text: "validation-failed: a field is missing, of the wrong type or out of range",
};
const UNAVAILABLE: Reason = Reason {
    status: "503",
    marker: "unavailable",
    text: "unavailable: the database or the ledger cannot be reached or is busy, or the request timed out; \
           retry after Retry-After",
};

/// Routes that answer without PostgreSQL (or, `/readyz`, document their own 503).
const WITHOUT_DATABASE: [&str; 3] = ["/healthz", "/metrics", "/readyz"];

/// Adds the shared error answers to every operation of the document, and a description to
/// every answer that has none.
pub struct SharedProblems;

impl Modify for SharedProblems {
    fn modify(&self, openapi: &mut OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if parameter.name.eq_ignore_ascii_case("idempotency-key") {
                        parameter.schema = Some(idempotency_key().into());
                    }
                }
                for reason in reasons(path, operation) {
                    add(operation, reason);
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    if let RefOr::T(response) = response {
                        if response.description.is_empty() {
                            response.description = default_description(status).to_owned();
                        }
                    }
                }
            }
        }
    }
}

/// The `Idempotency-Key` header as `IdempotencyKey` checks it.
fn idempotency_key() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(IDEMPOTENCY_KEY_LENGTH_MAX_CHARS))
        .pattern(Some("^[!-~]+$"))
        .examples(["3f2b8c1e-charge-2026-11-24"])
        .build()
}

/// The names of the security schemes an operation accepts.
fn schemes(operation: &Operation) -> Vec<String> {
    let requirements = serde_json::to_value(&operation.security).unwrap_or_default();
    let requirements = requirements.as_array().cloned().unwrap_or_default();
    requirements.iter().filter_map(|requirement| requirement.as_object()).flat_map(|map| map.keys().cloned()).collect()
}

fn reasons(path: &str, operation: &Operation) -> Vec<Reason> {
    let schemes = schemes(operation);
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| parameters.iter().any(|parameter| parameter.parameter_in == place);
    let mut reasons = Vec::new();
    if schemes.iter().any(|scheme| scheme == "bearer") {
        reasons.push(UNAUTHORIZED);
    }
    if schemes.iter().any(|scheme| scheme == "admin") {
        reasons.extend([ADMIN_UNAUTHORIZED, ADMIN_DISABLED, ADMIN_GUESSING]);
    }
    if has(ParameterIn::Path) {
        reasons.push(NOT_FOUND);
    }
    if has(ParameterIn::Query) {
        reasons.push(BAD_QUERY);
    }
    if parameters.iter().any(|parameter| parameter.name.eq_ignore_ascii_case("idempotency-key")) {
        reasons.push(BAD_KEY);
    }
    if operation.request_body.is_some() {
        reasons.extend([MALFORMED_BODY, BODY_TOO_LARGE, INVALID_BODY]);
    }
    if !WITHOUT_DATABASE.contains(&path) {
        reasons.push(UNAVAILABLE);
    }
    reasons
}

/// Documents `reason` on the operation: a new problem+json answer, or one more reason on the
/// answer already there for its status (unless that answer names it already).
fn add(operation: &mut Operation, reason: Reason) {
    let responses = &mut operation.responses.responses;
    match responses.get_mut(reason.status) {
        Some(RefOr::T(response)) => {
            if response.description.is_empty() {
                response.description = reason.text.to_owned();
            } else if !response.description.contains(reason.marker) {
                response.description = format!("{}; {}", response.description, reason.text);
            }
            with_headers(reason.status, response);
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let problem = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build();
            let mut response = ResponseBuilder::new().description(reason.text).content(PROBLEM_JSON, problem).build();
            with_headers(reason.status, &mut response);
            responses.insert(reason.status.to_owned(), RefOr::T(response));
        }
    }
}

/// `Retry-After` on every 503 and 429, and the `RateLimit-*` headers on every 429.
fn with_headers(status: &str, response: &mut Response) {
    let integer = |description: &str| {
        HeaderBuilder::new().schema(Object::with_type(Type::Integer)).description(Some(description)).build()
    };
    let headers = &mut response.headers;
    match status {
        "503" => {
            headers.entry("Retry-After".to_owned()).or_insert_with(|| integer("Seconds to wait before retrying"));
        }
        "429" => {
            headers.entry("Retry-After".to_owned()).or_insert_with(|| integer("Seconds until a retry may succeed"));
            headers.entry("RateLimit-Limit".to_owned()).or_insert_with(|| integer("What the window allows"));
            headers.entry("RateLimit-Remaining".to_owned()).or_insert_with(|| integer("0"));
            headers.entry("RateLimit-Reset".to_owned()).or_insert_with(|| integer("Seconds until the limit lifts"));
        }
        _ => {}
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "200" => "OK",
        "201" => "Created",
        "204" => "Done; no body",
        "404" => "not-found",
        "409" => "invalid-state",
        "422" => "validation-failed",
        "503" => "unavailable",
        _ => "See the operation's description",
    }
}
