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
    let page = app.client.get(app.url("/swagger-ui/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("swagger-ui"));
}
