use crate::helpers::*;

/// The committed `openapi/openapi.json` must be what the code generates. After changing a
/// route, regenerate it: `cargo run -- openapi > openapi/openapi.json`.
#[test]
fn the_committed_openapi_document_is_current() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json")).unwrap_or_default();
    let generated = minipay::http::openapi_json();
    assert!(committed == generated, "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`");
}

#[tokio::test]
async fn the_server_serves_its_openapi_document_and_swagger_ui() {
    let app = spawn_app().await;
    let (status, body) = app.get("/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::from_str::<serde_json::Value>(&minipay::http::openapi_json()).unwrap());
    for path in ["/v1/users", "/v1/accounts/{id}/charges", "/admin/audit"] {
        assert!(body["paths"][path].is_object(), "{path} missing from the spec");
    }
    let (status, served_to_swagger_ui) = app.get("/api-docs/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(served_to_swagger_ui, body, "Swagger UI shows the same document");
    let page = app.client.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
}

fn document() -> serde_json::Value {
    serde_json::from_str(&minipay::http::openapi_json()).unwrap()
}

/// Every operation of the document, as (method path, operation).
fn operations(doc: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            found.push((format!("{} {path}", method.to_uppercase()), operation.clone()));
        }
    }
    found
}

fn schemes(operation: &serde_json::Value) -> Vec<String> {
    let requirements = operation["security"].as_array().cloned().unwrap_or_default();
    requirements.iter().flat_map(|requirement| requirement.as_object().unwrap().keys().cloned()).collect()
}

/// What a client learns from the document: every answer described, every error answer
/// problem+json, and the statuses the extractors and middleware give on every route that
/// reaches them (these came from the server, not from the handlers' annotations).
#[test]
fn every_operation_documents_the_answers_it_can_give() {
    let doc = document();
    for (name, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        let has = |status: &str| responses.contains_key(status);
        for (status, response) in responses {
            assert!(
                !response["description"].as_str().unwrap_or_default().is_empty(),
                "{name} {status}: no description"
            );
            if status.starts_with('4') || (status.starts_with('5') && !name.ends_with("/readyz")) {
                let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/Problem", "{name} {status}: not problem+json");
            }
        }
        let schemes = schemes(&operation);
        if schemes.iter().any(|scheme| scheme == "bearer") {
            assert!(has("401"), "{name}: 401 missing");
        }
        if schemes.iter().any(|scheme| scheme == "admin") {
            assert!(has("401") && has("429"), "{name}: admin refusals missing");
            assert!(
                responses["404"]["description"].as_str().unwrap().contains("MINIPAY_ADMIN_TOKEN is unset"),
                "{name}"
            );
        }
        if operation.get("requestBody").is_some() {
            assert!(has("400") && has("413") && has("422"), "{name}: body refusals missing");
        }
        let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
        if parameters.iter().any(|parameter| parameter["in"] == "query") {
            assert!(has("422"), "{name}: 422 missing");
        }
        if parameters.iter().any(|parameter| parameter["in"] == "path") {
            assert!(has("404"), "{name}: 404 missing");
        }
        for parameter in parameters.iter().filter(|parameter| parameter["name"] == "Idempotency-Key") {
            assert!(responses["422"]["description"].as_str().unwrap().contains("idempotency-key-reused"), "{name}");
            assert_eq!(parameter["schema"]["maxLength"], 255, "{name}");
        }
        if !["GET /healthz", "GET /metrics", "GET /readyz"].contains(&name.as_str()) {
            assert!(responses["503"]["headers"]["Retry-After"].is_object(), "{name}: 503 missing");
        }
    }
}

/// Every request and response body has an example, and the two bearer schemes say which
/// token they take.
#[test]
fn bodies_have_examples_and_the_security_schemes_say_which_token() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let example_of = |content: &serde_json::Value| {
        let reference = content["schema"]["$ref"].as_str().unwrap_or_default();
        let name = reference.trim_start_matches("#/components/schemas/");
        content.get("example").is_some() || schemas[name].get("example").is_some()
    };
    for (name, operation) in operations(&doc) {
        if let Some(content) = operation["requestBody"]["content"]["application/json"].as_object() {
            assert!(example_of(&serde_json::Value::Object(content.clone())), "{name}: request body without example");
        }
        for (status, response) in operation["responses"].as_object().unwrap() {
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                assert!(example_of(content), "{name} {status} {media}: no example");
            }
        }
    }
    // Links name operations that exist, in the specification's spelling.
    let ids: Vec<String> = operations(&doc).iter().map(|(_, operation)| operation["operationId"].to_string()).collect();
    let mut links = 0;
    for (name, operation) in operations(&doc) {
        for response in operation["responses"].as_object().unwrap().values() {
            for link in response["links"].as_object().into_iter().flat_map(|links| links.values()) {
                assert!(ids.contains(&link["operationId"].to_string()), "{name}: a link to {link}");
                links += 1;
            }
        }
    }
    assert!(links > 10, "the document links created resources to the operations that use them");
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["bearer"]["description"].as_str().unwrap().contains("POST /v1/sessions"));
    assert!(schemes["admin"]["description"].as_str().unwrap().contains("MINIPAY_ADMIN_TOKEN"));
}

/// Text values are enums with the values the server accepts, and bounds are those it enforces.
#[test]
fn enums_and_bounds_are_those_the_server_enforces() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let values = |name: &str| -> Vec<String> {
        schemas[name]["enum"].as_array().unwrap().iter().map(|value| value.as_str().unwrap().to_owned()).collect()
    };
    use minipay::domain::transfers::TransferStatus;
    assert!(values("TransferStatus").iter().all(|value| TransferStatus::parse(value).is_some()));
    assert_eq!(values("TransferStatus").len(), 5);
    assert_eq!(values("ShareStatus"), ["requested", "paid", "self", "declined"]);
    assert_eq!(values("NotificationKind").len(), 7);
    let amount = &schemas["AmountRequest"]["properties"]["amount"];
    assert_eq!((amount["minimum"].as_i64(), amount["maximum"].as_i64()), (Some(1), Some(1_000_000_000_000)));
    let history = &doc["paths"]["/v1/accounts/{id}/history"]["get"]["parameters"];
    let param = |name: &str| history.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["schema"].clone();
    assert_eq!(param("from")["format"], "date-time");
    assert_eq!(param("kind")["enum"].as_array().unwrap().len(), minipay::history::entry::KINDS.len());
    assert_eq!((param("limit")["minimum"].as_i64(), param("limit")["maximum"].as_i64()), (Some(1), Some(200)));
}
